"""The simulator behind ``bidsfusion synth``: test data with planted ground truth.

:mod:`~bidsfusion.synth.anatomy` builds the phantom and its planted effects,
:mod:`~bidsfusion.synth.individuality` makes each subject its own,
:mod:`~bidsfusion.synth.scanner` simulates acquisitions (placement, motion,
noise), :mod:`~bidsfusion.synth.dataset` writes the BIDS dataset.
"""
