"""Starting, finding, inspecting and stopping teacher services (tip_ray/teacher/service.py) from
a driver: the CLI (`tip-ray teacher serve|status|stop`) and the sweep use these. It lives with the
pipeline because a service's replicas are the pipeline's own teacher stages, placed as a run
would place them."""

from __future__ import annotations

from tip_ray.config.teacher_service import SERVICE_NAMESPACE, check_service_name
from tip_ray.teacher.service import REPLICA_SEPARATOR, TeacherServiceError, TeacherServiceFront, replica_name
from tip_ray.teacher.service_identity import identity_of

FRONT_OPTIONS = {
    "namespace": SERVICE_NAMESPACE,
    "lifetime": "detached",
    "max_restarts": -1,  # it holds no model: always worth restarting
    "max_concurrency": 1000,  # requests of every run wait here at once
    "num_cpus": 0,
}


def service_stages(prepared, replicas: int, max_restarts: int) -> list[tuple[type, tuple, dict, dict]]:
    """(class, args, kwargs, Ray options) of each replica: the scorer the pipeline's own
    teacher.backend would start, placed on the pipeline's teacher pool."""
    from tip_ray.pipeline.actors import tracked
    from tip_ray.pipeline.placement import Role, actor_options, plan_placement
    from tip_ray.pipeline.stages import teacher_stage

    if prepared.config.teacher.backend.type == "service":
        raise TeacherServiceError(
            "teacher.backend: a service cannot serve another service; give the pipeline the teacher's own "
            "backend (hf, vllm or server)", service=None)
    plan = plan_placement(prepared.config)[Role.TEACHER]
    stages = []
    for i in range(replicas):
        cls, args, kwargs = teacher_stage(prepared, plan, i)
        stages.append((tracked(cls), args, kwargs, actor_options(plan, max_restarts=max_restarts)))
    return stages


def find_service(name: str):
    """The service's front actor, or None when no service of that name runs on this cluster."""
    import ray

    try:
        return ray.get_actor(name, namespace=SERVICE_NAMESPACE)
    except ValueError:
        return None


def start_service(prepared, name: str, *, replicas: int, max_restarts: int = -1, timeout_s: float = 600.0):
    """Start the service named `name` for `prepared`'s teacher and wait until every replica has
    built its model; the front actor. A name already in use is refused."""
    import ray

    from tip_ray.pipeline.run_facts import compute_dtype

    check_service_name(name)
    if find_service(name) is not None:
        raise TeacherServiceError(
            f"a teacher service named {name!r} already runs on this cluster: use it, or stop it first "
            f"(`tip-ray teacher stop {name}`)", service=name)
    stages = service_stages(prepared, replicas, max_restarts)
    config = prepared.config
    on_gpu = any(options.get("num_gpus") for *_, options in stages)
    identity = identity_of(prepared.teacher_path, prepared.tokenizer_path, prepared.vocab_size,
                           config.teacher.signal, compute_dtype(prepared, on_gpu))
    front = ray.remote(TeacherServiceFront).options(name=name, **FRONT_OPTIONS).remote(name, identity, stages)
    try:
        ray.get(front.ready.remote(), timeout=timeout_s)
    except Exception as exc:
        stop_service(name)
        raise TeacherServiceError(f"teacher service {name!r} did not start: {exc}", service=name) from None
    return front


def list_services() -> list[str]:
    import ray

    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == SERVICE_NAMESPACE}
    return sorted(n for n in names if REPLICA_SEPARATOR not in n)


def service_status(name: str, timeout_s: float = 60.0) -> dict:
    import ray

    front = find_service(name)
    if front is None:
        raise TeacherServiceError(
            f"no teacher service named {name!r} on this cluster (running: {list_services() or 'none'})", service=name)
    return ray.get(front.status.remote(), timeout=timeout_s)


def stop_service(name: str) -> int:
    """Kill the service's front and replicas (no restart); the number of actors stopped."""
    import ray

    stopped = 0
    replicas = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a.get("namespace") == SERVICE_NAMESPACE and a["name"].startswith(name + REPLICA_SEPARATOR)]
    front = find_service(name)
    if front is None and not replicas:
        raise TeacherServiceError(
            f"no teacher service named {name!r} on this cluster (running: {list_services() or 'none'})", service=name)
    if front is not None:
        ray.kill(front, no_restart=True)  # first, so it does not recreate replicas
        stopped += 1
    for replica in replicas:
        try:
            ray.kill(ray.get_actor(replica, namespace=SERVICE_NAMESPACE), no_restart=True)
            stopped += 1
        except ValueError:  # already gone
            pass
    return stopped


__all__ = ["find_service", "list_services", "replica_name", "service_stages", "service_status",
           "start_service", "stop_service"]
