"""LTX-2 family (19B, 2.3, 2.5). Only file identification exists so far; the model code is planned."""
