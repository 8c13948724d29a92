"""Neural Relational Inference (Kipf et al. 2018): encoder/decoders, Gumbel-softmax and KL terms,
and the particle-simulation training task."""
