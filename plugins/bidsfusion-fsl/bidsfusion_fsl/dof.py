"""FLIRT's degrees of freedom for each registration (light: no nipype import)."""

T1W_TO_TEMPLATE_DOF = 12
"""T1w -> MNI152: affine."""
BOLD_TO_TEMPLATE_DOF = 7
"""Mean BOLD -> MNI152 when a subject has no T1w: similarity, as the built-in backend."""
BOLD_TO_T1W_DOF = 6
"""Mean BOLD -> the same subject's T1w: rigid."""
