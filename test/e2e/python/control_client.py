"""A Stageline control client in Python, written only against the protos (proto/stageline/control/v1).

Usage: control_client.py <control address>, with PYTHONPATH holding `protoc --python_out` output for
proto/stageline/control/v1 (no grpc_tools: calls go through grpcio's generic API, with the method
paths and message types read from the generated service descriptors).

Control serves TLS only and wants a bearer token on every call: STAGELINE_CA names the CA certificate
(PEM) its certificate is verified against, STAGELINE_TOKEN_FILE a file holding an API token (`stl_…`),
sent as `authorization: Bearer <token>`.

Prints `ok <check>` per passed check; on the first failure prints `FAIL <check>: <why>` and exits 1.
"""

import os
import sys
import uuid

import grpc
from google.protobuf.message import Message

from stageline.control.v1 import environment_service_pb2 as env_pb
from stageline.control.v1 import pipeline_service_pb2 as pipe_pb
from stageline.control.v1 import types_pb2 as t

TIMEOUT_SECONDS = 15
DEFAULT_STAGES = ["DEFAULT DATABASE", "DEFAULT JOB", "DEFAULT CONTAINER", "DEFAULT APPLICATION"]
FIELD_TRAILER = "stageline-field"


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_equal(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


class Check:
    """`with Check('name'):` prints `ok name` if the block passes, else FAIL and exits 1."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is None:
            print(f"ok {self.name}", flush=True)
            return False
        if isinstance(error, CheckFailed):
            why = str(error)
        elif isinstance(error, grpc.RpcError):
            why = f"unexpected gRPC error {error.code().name}: {error.details()}"
        else:
            import traceback

            why = "".join(traceback.format_exception(kind, error, tb))
        print(f"FAIL {self.name}: {why}", file=sys.stderr, flush=True)
        sys.exit(1)


class Service:
    """Unary callables for every method of a service, typed from the generated descriptor."""

    def __init__(self, channel, module, name):
        descriptor = module.DESCRIPTOR.services_by_name[name]
        self._calls = {}
        for method in descriptor.methods:
            if method.server_streaming or method.client_streaming:
                continue
            request = self._message_class(method.input_type)
            response = self._message_class(method.output_type)
            path = f"/{descriptor.full_name}/{method.name}"
            self._calls[method.name] = (
                request,
                channel.unary_unary(
                    path,
                    request_serializer=request.SerializeToString,
                    response_deserializer=response.FromString,
                ),
            )

    @staticmethod
    def _message_class(descriptor):
        module = {
            env_pb.DESCRIPTOR.name: env_pb,
            pipe_pb.DESCRIPTOR.name: pipe_pb,
            t.DESCRIPTOR.name: t,
        }[descriptor.file.name]
        return getattr(module, descriptor.name)

    def __call__(self, method, **fields):
        """Builds the request from keyword fields (unknown names raise) and calls the method."""
        request, call = self._calls[method]
        message = request(**fields)
        assert isinstance(message, Message)
        return call(message, timeout=TIMEOUT_SECONDS)


def expect_error(call, code, field=None):
    """Runs `call`, which must fail with `code`; with `field`, the server must name that field."""
    try:
        call()
    except grpc.RpcError as e:
        expect_equal(e.code(), code, f"status code (details {e.details()!r})")
        if field is not None:
            details = e.details() or ""
            expect(details.startswith(f"{field}: "), f"details {details!r} do not name the field {field!r}")
            trailer = dict(e.trailing_metadata() or ()).get(FIELD_TRAILER)
            expect_equal(trailer, field, f"{FIELD_TRAILER} trailer")
        return e
    raise CheckFailed(f"expected {code.name}, the call succeeded")


def stage_names(pipeline):
    return [s.name for s in pipeline.stages]


def expect_dense(pipeline, environment_id):
    expect_equal(pipeline.environment_id, environment_id, "pipeline.environment_id")
    expect_equal([s.order for s in pipeline.stages], list(range(len(pipeline.stages))), "stage orders")


def stage_named(pipeline, name):
    for s in pipeline.stages:
        if s.name == name:
            return s
    raise CheckFailed(f"no stage {name!r} in {stage_names(pipeline)}")


def stage_of(pipeline, service_id):
    holders = [s.name for s in pipeline.stages if service_id in s.service_ids]
    expect_equal(len(holders), 1, f"stages holding service {service_id}")
    return holders[0]


def secure_channel(address):
    """TLS verified against STAGELINE_CA, and the token of STAGELINE_TOKEN_FILE on every call."""
    try:
        ca_path, token_path = os.environ["STAGELINE_CA"], os.environ["STAGELINE_TOKEN_FILE"]
    except KeyError as missing:
        print(f"{missing.args[0]} is not set", file=sys.stderr)
        sys.exit(2)
    with open(ca_path, "rb") as f:
        ca = f.read()
    with open(token_path, encoding="utf-8") as f:
        token = f.read().strip()
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=ca),
        # Adds `authorization: Bearer <token>` to every call's metadata.
        grpc.access_token_call_credentials(token),
    )
    return grpc.secure_channel(address, credentials)


def main(address):
    channel = secure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT_SECONDS)
    envs = Service(channel, env_pb, "EnvironmentService")
    pipes = Service(channel, pipe_pb, "PipelineService")
    # A fresh project per run: ListEnvironments below sees only this run's environments.
    project = f"py-{uuid.uuid4().hex[:10]}"

    with Check("CreateEnvironment returns the environment with default settings"):
        created = envs("CreateEnvironment", project=project, name="staging")
        env = created.environment
        env_id = env.id
        expect(env_id != "", "environment.id is empty")
        expect_equal((env.project, env.name, env.runtime), (project, "staging", "local"), "project, name, runtime")
        expect_equal(env.status, t.ENVIRONMENT_STATUS_NEVER_DEPLOYED, "status")
        expect_equal((env.preview, env.cloned_from_id), (False, ""), "preview, cloned_from_id")
        s = env.settings
        # Responses carry every field: optional ones must be present, even at their defaults.
        for name in ("max_parallel_builds", "max_parallel_deploys", "namespace"):
            expect(s.HasField(name), f"settings.{name} is absent from the response")
        expect_equal((s.max_parallel_builds, s.max_parallel_deploys), (7, 7), "default parallelism")
        expect_equal(s.scheduling_mode, t.SCHEDULING_MODE_PIPELINED, "default scheduling_mode")
        expect_equal(s.mirror_mode, t.MIRROR_MODE_SERVICE, "default mirror_mode")
        # The one namespace rule: the project's "-" doubled, so that the join is injective.
        expect_equal(s.namespace, f"{project.replace('-', '--')}-staging", "default namespace")

    with Check("CreateEnvironment creates the four default stages in order"):
        pipeline = created.pipeline
        expect_dense(pipeline, env_id)
        expect_equal(stage_names(pipeline), DEFAULT_STAGES, "stages")
        expect(all(s.id and not s.service_ids for s in pipeline.stages), "default stages need ids and no services")
        default_stage = {s.name: s.id for s in pipeline.stages}

    with Check("GetEnvironment returns the environment and its pipeline"):
        got = envs("GetEnvironment", environment_id=env_id)
        expect_equal(got.environment, env, "environment")
        expect_equal(got.pipeline, pipeline, "pipeline")

    with Check("ListEnvironments pages with page_size 1 and next_page_token"):
        other_ids = [envs("CreateEnvironment", project=project, name=n).environment.id for n in ("qa", "prod")]
        envs("CreateEnvironment", project=f"{project}-x", name="staging")  # another project: not listed
        seen, token, pages = [], "", 0
        while True:
            page = envs("ListEnvironments", project=project, page_size=1, page_token=token)
            pages += 1
            expect(pages <= 4, "more pages than environments")
            expect(len(page.environments) <= 1, f"page of {len(page.environments)} with page_size 1")
            seen += [e.id for e in page.environments]
            token = page.next_page_token
            if not token:
                break
        expect_equal(seen, [env_id, *other_ids], "environments, oldest first")

    with Check("UpdateEnvironment changes only the settings it is given"):
        settings = t.EnvironmentSettings(max_parallel_builds=3, scheduling_mode=t.SCHEDULING_MODE_STRICT)
        updated = envs("UpdateEnvironment", environment_id=env_id, settings=settings).environment.settings
        expect_equal(updated.max_parallel_builds, 3, "max_parallel_builds")
        expect_equal(updated.scheduling_mode, t.SCHEDULING_MODE_STRICT, "scheduling_mode")
        expect_equal(updated.max_parallel_deploys, 7, "max_parallel_deploys (absent: kept)")
        expect_equal(updated.mirror_mode, t.MIRROR_MODE_SERVICE, "mirror_mode (unspecified: kept)")
        expect_equal(envs("GetEnvironment", environment_id=env_id).environment.settings, updated, "stored settings")

    busybox = t.ContainerSource(image="docker.io/library/busybox", tag="1.36")
    definitions = {
        "db": t.Service(
            name="db",
            kind=t.SERVICE_KIND_DATABASE,
            database=t.DatabaseSource(
                engine=t.DATABASE_ENGINE_POSTGRESQL, version="15", mode=t.DATABASE_MODE_CONTAINER
            ),
        ),
        "migrate": t.Service(
            name="migrate",
            kind=t.SERVICE_KIND_LIFECYCLE_JOB,
            job=t.JobSource(container=busybox, on_deploy=True, max_duration_seconds=120),
        ),
        "cleanup": t.Service(
            name="cleanup",
            kind=t.SERVICE_KIND_CRON_JOB,
            job=t.JobSource(container=busybox, schedule="*/5 * * * *"),
        ),
        "web": t.Service(
            name="web",
            kind=t.SERVICE_KIND_CONTAINER,
            container=t.ContainerSource(
                image="docker.io/library/nginx", tag="1.25", ports=[t.Port(port=80, public=True)]
            ),
            env_vars=[t.EnvVar(key="MODE", value="prod"), t.EnvVar(key="TOKEN", value="s3cret", secret=True)],
        ),
        "api": t.Service(
            name="api",
            kind=t.SERVICE_KIND_APPLICATION,
            application=t.ApplicationSource(
                git_url="https://git.example.com/team/api.git", branch="main", ports=[t.Port(port=8080)]
            ),
        ),
    }
    expected_stage = {
        "db": "DEFAULT DATABASE",
        "migrate": "DEFAULT JOB",
        "cleanup": "DEFAULT JOB",
        "web": "DEFAULT CONTAINER",
        "api": "DEFAULT APPLICATION",
    }
    expected_source = {"db": "database", "migrate": "job", "cleanup": "job", "web": "container", "api": "application"}
    ids = {}
    for name, definition in definitions.items():
        kind = t.ServiceKind.Name(definition.kind)
        with Check(f"AddService {kind} without a stage lands in {expected_stage[name]}"):
            added = envs("AddService", environment_id=env_id, service=definition).service
            expect(added.id != "", "service.id is empty")
            ids[name] = added.id
            expect_equal(added.environment_id, env_id, "service.environment_id")
            expect_equal((added.name, added.kind, added.skipped), (name, definition.kind, False), "name, kind, skipped")
            expect_equal(added.WhichOneof("source"), expected_source[name], "source")
            expect_equal(added.stage_id, default_stage[expected_stage[name]], "service.stage_id")
            pipeline = envs("GetEnvironment", environment_id=env_id).pipeline
            expect_equal(stage_of(pipeline, added.id), expected_stage[name], "stage in the pipeline")
            if added.HasField("job"):
                expect_equal(added.job.WhichOneof("from"), "container", "job source")
                expect_equal(added.job.container.tag, "1.36", "job image tag")

    with Check("secret env var values are write-only"):
        web = next(s for s in envs("ListServices", environment_id=env_id).services if s.id == ids["web"])
        expect_equal(
            [(v.key, v.value, v.secret) for v in web.env_vars],
            [("MODE", "prod", False), ("TOKEN", "", True)],
            "env_vars as read",
        )

    with Check("UpdateService replaces the definition named by service.id"):
        web.container.tag = "1.26"
        web.container.ports.append(t.Port(port=443, public=True))
        # Sent back as read: the secret's empty value keeps the stored one.
        updated = envs("UpdateService", environment_id=env_id, service=web).service
        expect_equal(updated.id, ids["web"], "service.id")
        expect_equal(updated.container.tag, "1.26", "container.tag")
        expect_equal([(p.port, p.public) for p in updated.container.ports], [(80, True), (443, True)], "ports")
        expect_equal(updated.stage_id, default_stage["DEFAULT CONTAINER"], "stage_id (unchanged)")

    with Check("ListServices lists every service in pipeline order"):
        services = envs("ListServices", environment_id=env_id).services
        expect_equal([s.name for s in services], ["db", "migrate", "cleanup", "web", "api"], "services")
        expect_equal(next(s for s in services if s.name == "web").container.tag, "1.26", "updated web tag")
        expect(all(s.environment_id == env_id for s in services), "service.environment_id")

    with Check("CreateStage inserts at the given position, including an explicit 0"):
        pipeline = pipes("CreateStage", environment_id=env_id, name="Canary", description="c", position=1).pipeline
        expect_dense(pipeline, env_id)
        expect_equal(stage_names(pipeline)[1], "Canary", "stage at position 1")
        # proto3 optional: position 0 is present and means first, not "absent: last".
        pipeline = pipes("CreateStage", environment_id=env_id, name="Warm-up", position=0).pipeline
        expect_equal(stage_names(pipeline)[0], "Warm-up", "stage at position 0")
        pipeline = pipes("CreateStage", environment_id=env_id, name="Smoke tests").pipeline
        expect_dense(pipeline, env_id)
        expect_equal(
            stage_names(pipeline),
            ["Warm-up", "DEFAULT DATABASE", "Canary", *DEFAULT_STAGES[1:], "Smoke tests"],
            "stages (no position: last)",
        )
        canary_id = stage_named(pipeline, "Canary").id
        warmup_id = stage_named(pipeline, "Warm-up").id

    with Check("UpdateStage renames and describes a stage"):
        pipeline = pipes(
            "UpdateStage", environment_id=env_id, stage_id=canary_id, name="Canary checks", description="first 5%"
        ).pipeline
        stage = next(s for s in pipeline.stages if s.id == canary_id)
        expect_equal((stage.name, stage.description), ("Canary checks", "first 5%"), "name, description")
        # Empty name: unchanged; description present but empty: cleared.
        pipeline = pipes("UpdateStage", environment_id=env_id, stage_id=canary_id, description="").pipeline
        stage = next(s for s in pipeline.stages if s.id == canary_id)
        expect_equal((stage.name, stage.description), ("Canary checks", ""), "name, description")

    with Check("MoveStage moves a stage and keeps orders dense"):
        last = len(pipeline.stages) - 1
        pipeline = pipes("MoveStage", environment_id=env_id, stage_id=canary_id, position=last).pipeline
        expect_dense(pipeline, env_id)
        expect_equal(pipeline.stages[last].id, canary_id, "last stage")
        expect_equal(
            stage_names(pipeline),
            ["Warm-up", *DEFAULT_STAGES, "Smoke tests", "Canary checks"],
            "stages",
        )

    with Check("MoveService moves a service to another stage"):
        pipeline = pipes("MoveService", environment_id=env_id, service_id=ids["api"], stage_id=canary_id).pipeline
        expect_equal(stage_of(pipeline, ids["api"]), "Canary checks", "api's stage")
        api = next(s for s in envs("ListServices", environment_id=env_id).services if s.id == ids["api"])
        expect_equal(api.stage_id, canary_id, "api.stage_id")

    with Check("SetServiceSkipped sets and clears the skipped flag"):
        for name in ("db", "cleanup", "web"):
            service = pipes("SetServiceSkipped", environment_id=env_id, service_id=ids[name], skipped=True).service
            expect_equal(service.skipped, True, f"{name}.skipped")
        service = pipes("SetServiceSkipped", environment_id=env_id, service_id=ids["web"], skipped=False).service
        expect_equal(service.skipped, False, "web.skipped after clearing")
        skipped = {s.name: s.skipped for s in envs("ListServices", environment_id=env_id).services}
        expect_equal(
            skipped,
            {"db": True, "migrate": False, "cleanup": True, "web": False, "api": False},
            "skipped flags as listed",
        )

    with Check("error: DeleteStage of a non-empty stage without a target is FAILED_PRECONDITION"):
        expect_error(
            lambda: pipes("DeleteStage", environment_id=env_id, stage_id=canary_id),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        pipeline = envs("GetEnvironment", environment_id=env_id).pipeline
        expect_equal(stage_of(pipeline, ids["api"]), "Canary checks", "api's stage after the refusal")

    with Check("DeleteStage moves a non-empty stage's services to move_services_to_stage_id"):
        pipeline = pipes(
            "DeleteStage",
            environment_id=env_id,
            stage_id=canary_id,
            move_services_to_stage_id=default_stage["DEFAULT APPLICATION"],
        ).pipeline
        expect_dense(pipeline, env_id)
        expect(canary_id not in [s.id for s in pipeline.stages], "the deleted stage is still there")
        expect_equal(stage_of(pipeline, ids["api"]), "DEFAULT APPLICATION", "api's stage")
        pipeline = pipes("DeleteStage", environment_id=env_id, stage_id=warmup_id).pipeline  # empty: no target
        expect_equal(stage_names(pipeline), [*DEFAULT_STAGES, "Smoke tests"], "stages")

    with Check("RemoveService removes a service from the environment and its stage"):
        response = envs("RemoveService", environment_id=env_id, service_id=ids["migrate"])
        expect_equal(response.ListFields(), [], "RemoveService response")
        names = [s.name for s in envs("ListServices", environment_id=env_id).services]
        expect_equal(names, ["db", "cleanup", "web", "api"], "services")
        pipeline = envs("GetEnvironment", environment_id=env_id).pipeline
        expect(all(ids["migrate"] not in s.service_ids for s in pipeline.stages), "removed service still in a stage")

    with Check("CloneEnvironment(preview) copies stages, services, settings and skipped flags"):
        source = envs("GetEnvironment", environment_id=env_id)
        source_services = envs("ListServices", environment_id=env_id).services
        clone = envs("CloneEnvironment", source_environment_id=env_id, name="pr-42", preview=True)
        c = clone.environment
        expect(c.id not in ("", env_id), "clone needs its own id")
        expect_equal((c.project, c.name, c.preview, c.cloned_from_id), (project, "pr-42", True, env_id), "identity")
        expect_equal(c.status, t.ENVIRONMENT_STATUS_NEVER_DEPLOYED, "status")
        expect_equal(
            (c.settings.max_parallel_builds, c.settings.scheduling_mode),
            (3, t.SCHEDULING_MODE_STRICT),
            "inherited settings",
        )
        expect_equal(c.settings.namespace, f"{project.replace('-', '--')}-pr-42", "the clone's own default namespace")
        expect_dense(clone.pipeline, c.id)
        expect_equal(stage_names(clone.pipeline), stage_names(source.pipeline), "stages")
        source_stage_ids = {s.id for s in source.pipeline.stages}
        expect(all(s.id not in source_stage_ids for s in clone.pipeline.stages), "clone stages reuse source ids")
        cloned = envs("ListServices", environment_id=c.id).services
        expect_equal(
            [(s.name, s.kind, s.skipped) for s in cloned],
            [(s.name, s.kind, s.skipped) for s in source_services],
            "services (name, kind, skipped)",
        )
        expect_equal([s.name for s in cloned if s.skipped], ["db", "cleanup"], "skipped services in the clone")
        for s in cloned:
            expect(s.id not in {x.id for x in source_services}, f"cloned service {s.name} reuses the source id")
            expect_equal(stage_of(clone.pipeline, s.id), stage_of(source.pipeline, ids[s.name]), f"{s.name}'s stage")

    with Check("error: a bad environment name is INVALID_ARGUMENT naming the field"):
        expect_error(
            lambda: envs("CreateEnvironment", project=project, name="Not_A_Label"),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="name",
        )
        bad_service = t.Service(name="Web Server", kind=t.SERVICE_KIND_CONTAINER, container=busybox)
        expect_error(
            lambda: envs("AddService", environment_id=env_id, service=bad_service),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="service.name",
        )

    with Check("error: settings.max_parallel_builds=0, present, is INVALID_ARGUMENT"):
        expect_error(
            lambda: envs(
                "UpdateEnvironment", environment_id=env_id, settings=t.EnvironmentSettings(max_parallel_builds=0)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="settings.max_parallel_builds",
        )

    with Check("error: an unknown id is NOT_FOUND"):
        unknown = str(uuid.uuid4())
        expect_error(lambda: envs("GetEnvironment", environment_id=unknown), grpc.StatusCode.NOT_FOUND)
        expect_error(
            lambda: pipes("SetServiceSkipped", environment_id=env_id, service_id=unknown, skipped=True),
            grpc.StatusCode.NOT_FOUND,
        )
        expect_error(
            lambda: pipes("UpdateStage", environment_id=env_id, stage_id=unknown, name="x"),
            grpc.StatusCode.NOT_FOUND,
        )

    with Check("error: an id that is not a UUID is NOT_FOUND too"):
        expect_error(lambda: envs("GetEnvironment", environment_id="no-such-env"), grpc.StatusCode.NOT_FOUND)

    with Check("error: a duplicate name is ALREADY_EXISTS"):
        expect_error(
            lambda: envs("CreateEnvironment", project=project, name="staging"),
            grpc.StatusCode.ALREADY_EXISTS,
            field="name",
        )
        expect_error(
            lambda: envs("AddService", environment_id=env_id, service=definitions["web"]),
            grpc.StatusCode.ALREADY_EXISTS,
            field="service.name",
        )
        expect_error(
            lambda: pipes("CreateStage", environment_id=env_id, name="Smoke tests"),
            grpc.StatusCode.ALREADY_EXISTS,
            field="name",
        )

    channel.close()
    print("all checks passed", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: control_client.py <control address>", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
