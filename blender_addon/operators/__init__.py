"""Operators of the DiMo add-on. Each module exports `classes`; they are thin and call plain functions."""

classes = ()
