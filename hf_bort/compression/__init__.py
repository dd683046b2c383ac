"""`hf_bort.compress`: a fine-tuned model to the most accurate student that meets a speed budget, in one call."""

from .compress import CompressResult, compress, compress_search
from .compress_config import CompressConfig
from .task_distillation import TaskDistillationTrainer


__all__ = ["CompressConfig", "CompressResult", "TaskDistillationTrainer", "compress", "compress_search"]
