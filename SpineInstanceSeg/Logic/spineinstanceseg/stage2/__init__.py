"""Stage 2: windowed multi-scale 3D U-Net with MAFU that splits a semantic spine mask into vertebra instances."""
