"""The CNN course's grader: everything `nbgrader autograde` runs besides nbgrader itself.

Instructor-only: never installed for students nor shipped in their bundle. The course's
nbgrader folder, grader/, holds the configuration (grader/nbgrader_config.py imports
this package) and the documentation (grader/CHECKS.md, grader/README.md).

Imports point downward only:

- ``paper``: the papers' layer tables (AlexNet, VGG16); imports nothing of the grader.
- ``environment``: the environment variables the grader reads, and the venv on PATH.
- ``task_limit``: how many processes and threads one sandbox may run (used by
  ``sandbox``).
- ``sandbox``, ``unreadable``, ``handed_in``, ``preflight``: bubblewrap, unreadable
  submissions, handed-in links, FIFOs and devices (moved to refused/, never copied), the
  checks before grading.
- ``netgraph``: the description of a network as data, its rebuild and analysis (uses
  ``paper``).
- ``describe`` / ``describe_child``: describing a submission's networks in the sandbox.
- ``hidden_checks``: the graded parts, run on the rebuilt networks.
- ``training_cache``: the accuracy part's trainings, keyed by the rebuilt computation.
- ``course_preprocessors``, ``sandboxed_kernel``: the nbgrader side.
- ``gradebook``: the gradebook's URL, and what must be in it before parallel grading.
- ``grading_record``: each graded submission's parts, times and machine, as data
  (written by ``course_preprocessors``); ``class_report``: the class report built from
  the records and the gradebook.
- ``app_logging``: the Formgrader's reports without DEBUG lines (a filter in the server).
- ``classrun``: a whole class on Ray, one ``nbgrader autograde`` per student (uses
  ``gradebook``, ``preflight``, ``unreadable``, ``handed_in``, and ``autograde_fork``,
  which starts each student's process from a warm one; ``ray_site`` holds a stand-in for
  Ray's own processes).
"""
