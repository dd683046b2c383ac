"""OSE: optimal subarchitecture extraction (de Wynter & Perry, 2020), the FPTAS that found Bort."""

from .costs import LatencyModel, inference_flops, parameter_count, pareto_front
from .extract import compute_importance, extract_subnetwork
from .latency import measure_latency_ms
from .ose_config import OSEConfig
from .result import CandidateRecord, OSEResult
from .search import OSESearch, epsilon_cover, read_text_lines, w_coefficient
from .space import Architecture, SearchSpace


__all__ = [
    "Architecture",
    "CandidateRecord",
    "LatencyModel",
    "OSEConfig",
    "OSEResult",
    "OSESearch",
    "SearchSpace",
    "compute_importance",
    "epsilon_cover",
    "extract_subnetwork",
    "inference_flops",
    "measure_latency_ms",
    "parameter_count",
    "pareto_front",
    "read_text_lines",
    "w_coefficient",
]
