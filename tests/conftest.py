import torch

# Two cores on the CI machine: keep intra-op threads small so parallel
# processes (Ray workers) do not oversubscribe.
torch.set_num_threads(2)
