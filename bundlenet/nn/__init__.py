"""The network pieces of a BundleNet: cover, local frames, fiber latent, fiber flow, support maps, losses."""
