"""What runs and searches write for people: figures, tables, TensorBoard records."""
