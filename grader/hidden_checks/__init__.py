"""Hidden checks of the AlexNet/VGG16 assignment (instructor-only, never shipped).

They never run in a student's kernel: ``runner.run_checks`` runs the pytest module
``test_parts.py`` in the grader's process, on networks rebuilt from the descriptions
the sandbox wrote (grader/describe.py). ``checks`` holds the logic of each part,
``spec`` the papers' tables, ``recipes`` the training recipes and thresholds,
``reference`` the master's networks, ``calibrate`` the calibration command.
Documentation and calibration: ../CHECKS.md.
"""
