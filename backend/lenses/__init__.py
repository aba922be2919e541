"""Lenses on a run's latents (docs/method.md §6): the latent map's points and each latent's
nearest neighbours in its own run and in other runs on the same dataset; numpy only."""
