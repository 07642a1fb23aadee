"""Pretrained teachers (each a faithful port of the published model) and their registry."""

from .base import Teacher, TeacherOutput, get_teacher, known_teachers, register_teacher
from . import crepe  # noqa: F401  registers crepe-full, crepe-tiny
from . import musicnn  # noqa: F401  registers musicnn-mtt, musicnn-msd, musicnn-mtt-vgg, musicnn-msd-vgg
from . import generic  # noqa: F401  registers torchscript, onnx
from . import panns  # noqa: F401  registers panns-cnn14, panns-cnn6
from . import ensemble  # noqa: F401  registers ensemble
from . import huggingface  # noqa: F401  registers hf
from . import reference  # noqa: F401  registers reference-f0

__all__ = ["Teacher", "TeacherOutput", "get_teacher", "known_teachers", "register_teacher"]
