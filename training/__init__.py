"""edgetag's training side: teachers, students and distillation (needs torch)."""
