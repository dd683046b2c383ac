"""OSE: optimal subarchitecture extraction (de Wynter & Perry, 2020), the FPTAS that found Bort."""

from .costs import LatencyModel, inference_flops, parameter_count, pareto_front
from .space import Architecture, SearchSpace

__all__ = [
    "Architecture",
    "LatencyModel",
    "SearchSpace",
    "inference_flops",
    "parameter_count",
    "pareto_front",
]
