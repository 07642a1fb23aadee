"""Pretrained teachers (each a faithful port of the published model) and their registry."""

from .base import Teacher, TeacherOutput, get_teacher, known_teachers, register_teacher
from . import crepe  # noqa: F401  registers crepe-full, crepe-tiny
from . import musicnn  # noqa: F401  registers musicnn-mtt, musicnn-msd, musicnn-mtt-vgg, musicnn-msd-vgg

__all__ = ["Teacher", "TeacherOutput", "get_teacher", "known_teachers", "register_teacher"]
