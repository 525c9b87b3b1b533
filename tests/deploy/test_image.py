"""The image, checked without building it (no container engine here): the Dockerfile's stages,
user, ports and files against how the services start; its dependencies only from the hashed lock
(tests/security/test_supply_chain.py checks the lock against pyproject.toml); and the migrate entry
point the init containers run."""

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib

import pytest
from dockerfile_parse import DockerfileParser

from testkit.infra import free_port
from tests.deploy import manifests as m

ROOT = m.ROOT
SERVICES = m.services()


def _instructions() -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in DockerfileParser(path=str(ROOT / "Dockerfile")).structure
            if i["instruction"] != "COMMENT"]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, value in _instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, value))
    return stages


def _final() -> list[tuple[str, str]]:
    return _stages()[-1]


def _ignored(path: str) -> bool:
    """.dockerignore semantics: the last pattern matching the path or one of its parents wins."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(body).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if body.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(body[3:])
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def test_multi_stage_from_a_pinned_python_matching_pyproject():
    args = dict(v.split("=", 1) for i, v in _instructions() if i == "ARG" and "=" in v)
    base = args["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base)
    assert match, f"{base}: pin a patch release of a slim image (and its digest when releasing)"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={match[1]}.{match[2]}" in requires
    stages = _stages()
    assert len(stages) >= 2, "build in one stage, run in a slim one"
    assert all(stage[0][1].split()[0] == "${PYTHON_IMAGE}" for stage in stages)


def test_no_healthcheck_and_nothing_installed_at_run_time():
    assert not any(i == "HEALTHCHECK" for i, _ in _instructions()), "Kubernetes probes the apps"
    for instruction, value in _final():
        if instruction == "RUN":
            assert not re.search(r"\b(pip|apt-get|apt|curl|wget|uv)\b", value), f"final stage installs: {value}"
        if instruction == "ENV":
            assert "INDEX_URL" not in value


def test_dependencies_only_from_the_hashed_lock():
    runs = [v for i, v in _instructions() if i == "RUN" and " install " in f" {v} "]
    assert len(runs) == 1, runs
    words = shlex.split(runs[0])
    assert {"--no-deps", "--require-hashes", "--only-binary=:all:"} <= set(words)
    lock_in_image = words[words.index("-r") + 1]
    copies = [shlex.split(v) for i, v in _instructions() if i == "COPY"]
    assert ["requirements.lock", lock_in_image] in copies


def test_the_images_venv_holds_only_the_locked_packages():
    """`python -m venv` would seed ensurepip's pip and setuptools (3.11: setuptools 65.5.0, with a
    known advisory) that no lock pins and `make audit` never sees: the venv is made without pip and
    the build stage's pip installs into it."""
    runs = [shlex.split(v) for i, v in _instructions() if i == "RUN"]
    venvs = [words for words in runs if words[:3] == ["python", "-m", "venv"]]
    assert len(venvs) == 1 and "--without-pip" in venvs[0], venvs
    target = venvs[0][-1]
    (install,) = [words for words in runs if "install" in words]
    assert install[:5] == ["python", "-m", "pip", "--python", f"{target}/bin/python"], install


def test_the_user_is_the_pods():
    user = next(v for i, v in reversed(_final()) if i == "USER")
    uid, gid = (int(x) for x in user.split(":"))
    assert uid != 0 and gid != 0
    for overlay in m.OVERLAYS:
        for deployment in m.Objects(overlay).of("Deployment"):
            context = deployment["spec"]["template"]["spec"]["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)


def test_exposed_ports_are_the_services():
    exposed = {int(p) for i, v in _final() if i == "EXPOSE" for p in v.split()}
    assert exposed == {m.settings_class(s).model_fields["port"].default for s in SERVICES}


def test_the_entry_points_resolve_in_the_image():
    """`python` is the image's virtualenv, and every module the manifests run is under a copied
    directory on PYTHONPATH (the working directory)."""
    final = _final()
    env = DockerfileParser(path=str(ROOT / "Dockerfile")).envs
    workdir = next(v for i, v in reversed(final) if i == "WORKDIR")
    venv = next(shlex.split(v)[-1] for i, v in _instructions() if i == "RUN" and "-m venv" in v)
    assert env["PATH"].startswith(f"{venv}/bin:"), env["PATH"]
    assert workdir in env["PYTHONPATH"].split(":")
    copied = {shlex.split(v)[-1].rstrip("/") for i, v in _stages()[0] if i == "COPY"}
    commands = {tuple(c["command"]) for overlay in m.OVERLAYS for d in m.Objects(overlay).of("Deployment")
                for c in d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"].get("initContainers", [])}
    for command in commands:
        assert command[:2] == ("python", "-m")
        package_dir = f"{workdir}/{command[2].replace('.', '/')}"
        assert any(package_dir.startswith(c + "/") for c in copied), f"{command[2]} is not in the image"
        assert not _ignored(command[2].replace(".", "/") + "/__main__.py"), f"{command[2]} excluded by .dockerignore"


def test_the_build_context_holds_what_is_copied_and_nothing_else():
    for instruction, value in _instructions():
        if instruction == "COPY" and not value.startswith("--from"):
            source = shlex.split(value)[0]
            assert (ROOT / source).exists(), source
            assert not _ignored(source), f"{source} is excluded by .dockerignore"
    for kept in ("services/intake/app.py", "services/dispatch/content/templates/sms.en.j2", "requirements.lock"):
        assert not _ignored(kept), kept
    for dropped in ("tests/conftest.py", ".venv/bin/python", "var/intake.db", ".git/HEAD",
                    "services/intake/__pycache__/app.cpython-311.pyc", "benchmarks/__init__.py"):
        assert _ignored(dropped), dropped


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_migrate_entry_point_applies_migrations_and_exits(pg_database, service):
    """What the init container runs: on a fresh database it must finish (exit 0) rather than
    start the server, leave the schema it owns, and be a no-op the next time."""
    url = pg_database(None)  # empty: no tables yet
    # Migrations need only the database. Should the command ever serve instead, it must not
    # touch the shared broker or a used port: no broker there, a free port, its own prefix.
    env = {**m.clean_environ(), "DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
           "PANUI_TOPIC_PREFIX": f"test-migrate-{service}.", "PANUI_PORT": str(free_port()),
           "PANUI_HOST": "127.0.0.1"}
    for run in ("first", "again"):  # every pod start runs it: the second run has nothing to do
        try:
            done = subprocess.run([sys.executable, "-m", f"services.{service}", "migrate"], env=env,
                                  cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"python -m services.{service} migrate did not exit (it serves instead?)")
        assert done.returncode == 0, f"{run}: {done.stderr[-2000:]}"
    assert "nothing to do" in done.stdout, done.stdout
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        tables = {r[0] for r in conn.execute(sqlalchemy.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))}
    engine.dispose()
    assert any(t.startswith("alembic_version") for t in tables) and len(tables) > 1, tables
