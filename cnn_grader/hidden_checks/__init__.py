"""Hidden checks of the AlexNet/VGG16 assignment (instructor-only, never shipped).

They never run in a student's kernel: ``runner.run_checks`` runs the pytest module
``test_parts.py`` in the grader's process, on networks rebuilt from the descriptions
the sandbox wrote (cnn_cnn_grader/describe.py). ``checks`` holds the logic of each part,
``recipes`` the training recipes and thresholds,
``reference`` the master's networks, ``calibrate`` the calibration command.
The papers' tables are ``cnn_grader.paper``. Documentation and calibration:
grader/CHECKS.md.
"""
