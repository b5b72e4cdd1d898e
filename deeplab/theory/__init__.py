"""Theory: numbers a network's trainability is predicted from, no training."""
