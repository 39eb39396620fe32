"""Hidden checks of the AlexNet/VGG16 assignment (instructor-only, never shipped).

The master notebook's hidden test cells call, e.g.::

    from hidden_checks import grade
    grade.parameters("alexnet", AlexNet)

Parts: ``parameters``, ``logits``, ``feature_maps``, ``trainable``, ``accuracy``; each
takes the model CLASS and raises AssertionError with a message for the student.
``reference.load_reference()`` executes the master's model cells to get the reference
classes. Documentation and calibration: ../CHECKS.md.
"""
from . import grade, recipes, reference, spec
from .grade import accuracy, feature_maps, logits, parameters, trainable

__all__ = ["accuracy", "feature_maps", "grade", "logits", "parameters", "recipes",
           "reference", "spec", "trainable"]
