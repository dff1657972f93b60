"""Training: view-rich pairs, annealed geometric supervision and the accelerate loop."""
