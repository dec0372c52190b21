"""MAGI-1 family (4.5B / 24B, distill). Only file identification exists so far; the model code is planned."""
