"""Stand-ins for ``training_tasks.run_training`` (tests/test_training_tasks.py): Ray
workers import them from here, so that each way a training task can end is one call."""
import os


def student_fails(model, graph, profile, seed, device, require_gpu):
    return ("fail", f"{model} could not be trained: the loss is NaN", 1.5)


def grader_raises(model, graph, profile, seed, device, require_gpu):
    raise ValueError("the grader's own bug")


def worker_dies(model, folder, profile, seed, device, require_gpu):
    """Counts its attempts in ``folder`` (sent as the graph), then dies."""
    with open(os.path.join(folder, "attempts"), "a") as record:
        record.write("1\n")
    os._exit(1)


def echoes(model, graph, profile, seed, device, require_gpu):
    """The seed it received as the seconds of its result, and the GPU share Ray gave it."""
    import ray

    gpus = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    return ("ok", (2.0, 1.0, 0.5, float(seed or 0)), 2.5, gpus)
