import sys
from pathlib import Path

import torch

# Helpers shared by every test folder (e.g. dataset_files: torchvision's file layouts).
sys.path.insert(0, str(Path(__file__).parent))

# Two cores on the CI machine: keep intra-op threads small so parallel
# processes (Ray workers) do not oversubscribe.
torch.set_num_threads(2)
