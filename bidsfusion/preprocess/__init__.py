"""Participant-level preprocessing: motion correction, registration to MNI, masks and fALFF."""
