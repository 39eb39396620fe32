"""Stand-in that keeps jsonschema from loading rfc3987_syntax in Ray's own processes.

Every Ray process imports jsonschema, which imports rfc3987_syntax when it is installed
(JupyterLab's dependencies install it); building that module's grammar costs about 3 s
of CPU. Ray's raylet gives its dashboard agent a fixed 15 s to start
(ray-project/ray#65983), so on a busy 2-core machine the first ``ray.init()`` failed
every time. ``cnn_grader.classrun`` puts this folder first on PYTHONPATH of the Ray it
starts: jsonschema then skips the optional "uri" format checks, which grading never uses.
"""
raise ImportError("rfc3987_syntax is left out of the grader's Ray processes (see above)")
