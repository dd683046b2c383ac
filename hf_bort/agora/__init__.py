"""Agora: fine-tuning that expands the training data around the model's dev errors, labelled by a teacher."""

from .agora_config import AgoraArguments
from .agora_trainer import AgoraTrainer, find_agora_checkpoint
from .data import AgoraDataCollator, carve_dev_split
from .history import AgoraRound, plot_agora_history
from .samplers import (
    SAMPLERS,
    AgoraSampler,
    CallableSampler,
    ContextualSampler,
    EmbeddingNeighbourSampler,
    MaskedLMSampler,
    build_sampler,
    sample_near,
)
from .teacher import AgoraTeacher, TeacherOutput


__all__ = [
    "AgoraArguments",
    "AgoraDataCollator",
    "AgoraRound",
    "AgoraSampler",
    "AgoraTeacher",
    "AgoraTrainer",
    "CallableSampler",
    "ContextualSampler",
    "EmbeddingNeighbourSampler",
    "MaskedLMSampler",
    "SAMPLERS",
    "TeacherOutput",
    "build_sampler",
    "carve_dev_split",
    "find_agora_checkpoint",
    "plot_agora_history",
    "sample_near",
]
