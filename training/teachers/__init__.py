"""Pretrained teachers (each a faithful port of the published model) and their registry."""

from .base import Teacher, TeacherOutput, get_teacher, known_teachers, register_teacher

__all__ = ["Teacher", "TeacherOutput", "get_teacher", "known_teachers", "register_teacher"]
