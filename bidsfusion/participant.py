"""The participant level: raw T1w + BOLD -> every registered modality's map in MNI space.

Before any work: the dataset, the labels, OUTPUT_DIR, the work directory, the
nipype plugin and the backend (its programs, if it needs any) are checked. For
each selected subject: plan what to do (skipping scans whose outputs are
complete, intact and made with the current settings; refusing bad scans with a
one-line reason), build the nipype workflow of
:mod:`bidsfusion.preprocess.workflow`, run it, rebuild the QC tables, report.
The effective configuration of every run is saved under ``OUTPUT_DIR/logs/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bidsfusion import __version__, errors
from bidsfusion.atomic import try_lock, write_text
from bidsfusion.bids import normalize_labels, open_dataset, select_sessions
from bidsfusion.config import RunConfig
from bidsfusion.errors import BidsFusionError, NothingSelectedError, OutputError, UsageError
from bidsfusion.locations import (
    check_locations,
    check_output_dir,
    check_work_dir,
    raw_link,
    write_dataset_description,
)
from bidsfusion.plugins import registered
from bidsfusion.timing import duration

if TYPE_CHECKING:
    from bidsfusion.preprocess.plan import SubjectPlan

log = logging.getLogger("bidsfusion.participant")


@dataclass
class Summary:
    """What a participant-level run did, per subject (or scan, for failures)."""

    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[BidsFusionError] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The end-of-run summary, one line per fact."""
        out = [
            f"processed {len(self.processed)}: {' '.join(self.processed) or '-'}",
            f"skipped (complete) {len(self.skipped)}: {' '.join(self.skipped) or '-'}",
            f"failed {len(self.failed)}",
        ]
        return out + [f"  {error}" for error in self.failed]


def run(config: RunConfig) -> Summary:
    """Process every selected subject; raise only if nothing could be processed."""
    from bidsfusion.preprocess.engine import check_plugin
    from bidsfusion.preprocess.plan import plan_subject
    from bidsfusion.preprocess.qc import write_tables

    layout, subjects = open_dataset(config.bids_dir, config.execution)
    check_locations(config.bids_dir, config.output_dir, config.execution.work_dir)
    check_output_dir(config.output_dir, config.work)
    check_plugin(config.participant.nipype_plugin)
    sessions = _sessions(layout, subjects, config)
    backend = _backend(config.participant.backend)
    modalities = list(registered("modalities").values())
    _check_task(layout, config.participant.task)
    check_work_dir(config.work)
    write_dataset_description(
        config.output_dir,
        raw_link(config.bids_dir, config.output_dir),
        os.environ.get("BIDSFUSION_CONTAINER"),
    )
    _record(config, subjects)
    _limit_threads(config.execution.omp_nthreads or 1)
    summary = Summary()
    plans = []
    with contextlib.ExitStack() as held:
        for subject in subjects:
            lock = try_lock(config.work / "locks" / f"sub-{subject}.lock")
            if lock is None:
                summary.failed.append(_busy(subject, config))
                continue
            held.enter_context(lock)
            plan, problems = plan_subject(layout, config, subject, sessions, modalities, backend)
            summary.failed.extend(problems)
            if plan.anat or plan.func:
                plans.append(plan)
            elif not problems:
                summary.skipped.append(f"sub-{subject}")
                log.info("sub-%s: all derivatives complete, skipped", subject)
        if plans:
            _run_plans(plans, config, backend, modalities, summary)
    _report_flagged(write_tables(config.output_dir, subjects), config.output_dir / "qc.tsv")
    for line in summary.lines():
        log.info(line)
    _raise_if_failed(summary)
    return summary


def _busy(subject: str, config: RunConfig) -> OutputError:
    """The error of a subject that another run with the same work directory is processing."""
    return OutputError(
        f"sub-{subject}: another bidsfusion run is processing it with the work directory "
        f"{config.work} (it holds {config.work / 'locks' / f'sub-{subject}.lock'}); wait "
        "for that run, or give this one other --participant-label values"
    )


def _backend(name: str):
    backends = registered("preprocessing_backends")
    if name not in backends:
        raise UsageError(f"unknown --backend {name!r}; registered: {', '.join(sorted(backends))}")
    backends[name].check()  # e.g. its programs on PATH: exit 66 before any work
    return backends[name]


def _sessions(layout, subjects: list[str], config: RunConfig) -> tuple[str, ...]:
    """The requested sessions (none: all); labels no selected subject has: exit 18."""
    requested = normalize_labels(config.execution.session_label, "ses")
    if not requested:
        return ()
    return select_sessions(layout.get_sessions(subject=subjects), requested)


def _record(config: RunConfig, subjects: list[str]) -> Path:
    """Save the run's effective configuration as ``logs/participant_<time>_<id>.toml``
    (its sections, the subjects and versions in its ``[record]``)."""
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4().hex[:6]}"
    path = config.output_dir / "logs" / f"participant_{stamp}.toml"
    record = {"subjects": subjects, "versions": {"bidsfusion": __version__}}
    write_text(path, config.to_toml(record))
    return path


def _report_flagged(rows: list[list[object]], table: Path) -> None:
    """Warn about every scan whose registration QC flagged it (rows of the QC table)."""
    from bidsfusion.preprocess.qc import COLUMNS

    for row in rows:
        record = dict(zip(COLUMNS, row, strict=True))
        if record["flagged"]:
            log.warning(
                "%s: registration flagged by QC (similarity %s < %s); see %s and the figures; "
                "the group level leaves it out unless --include-flagged",
                str(record["source"]).removeprefix("bids:raw:"),
                record["registration_similarity"],
                record["similarity_threshold"],
                table,
            )


def _check_task(layout, task: str) -> None:
    tasks = layout.get_tasks(suffix="bold")
    if task not in tasks:
        raise NothingSelectedError(
            f"no BOLD runs of task {task!r} in the dataset; it has: "
            f"{', '.join(sorted(tasks)) or 'no BOLD runs'}; choose one with --task"
        )


def _limit_threads(n: int) -> None:
    for variable in ("OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[variable] = str(n)


def _run_plans(plans, config: RunConfig, backend, modalities, summary: Summary) -> None:
    """Run every subject's workflow inside one parent workflow, so that the nipype
    plugin schedules steps of all subjects at once (``--nprocs`` at a time)."""
    from nipype.pipeline import engine as pe

    from bidsfusion.preprocess.engine import run_workflow
    from bidsfusion.preprocess.workflow import init_subject_wf, subject_workflow_name

    # cached nodes of another bidsfusion version are never reused: one cache per version
    wf = pe.Workflow(name="participant", base_dir=str(config.work / f"bidsfusion-{__version__}"))
    progress = SubjectProgress()
    for plan in plans:
        log.info(
            "sub-%s: %d T1w and %d BOLD run(s) to process",
            plan.subject,
            sum(1 for job in plan.anat if job.outputs),
            len(plan.func),
        )
        subject_wf = init_subject_wf(plan, backend, modalities, config.participant.skull_strip)
        progress.expect(subject_wf.name, len(subject_wf.list_node_names()))
        wf.add_nodes([subject_wf])
    start = time.monotonic()
    failures = run_workflow(wf, config, progress)
    for plan in plans:
        name = subject_workflow_name(plan.subject)
        mine = subject_failures(
            plan, [error for node, error in failures.items() if name in node.split(".")]
        )
        summary.failed.extend(mine)
        if len(mine) < len(plan.anat) + len(plan.func):
            summary.processed.append(f"sub-{plan.subject}")
    log.info("%d subject(s) run in %.0f s", len(plans), time.monotonic() - start)


def subject_failures(plan: SubjectPlan, failed: list[BidsFusionError]) -> list[BidsFusionError]:
    """The errors of a subject's failed steps, each message once (steps that read the same
    T1w fail alike), and for every BOLD run registered to a failed T1w an error naming
    the run instead of its own steps' errors."""
    distinct = list({str(error): error for error in failed}.values())
    failed_t1w = {
        job.key: error
        for job in plan.anat
        for error in distinct
        if str(error).startswith(f"{job.t1w}:")
    }
    orphans = [job for job in plan.func if job.anat_key in failed_t1w]
    lost = [
        type(failed_t1w[job.anat_key])(
            f"{job.bold}: not processed: the T1w it is registered to failed "
            f"({failed_t1w[job.anat_key]})"
        )
        for job in orphans
    ]
    kept = [e for e in distinct if not any(str(e).startswith(f"{j.bold}:") for j in orphans)]
    return kept + lost


class SubjectProgress:
    """nipype status callback: a line at every tenth of all steps done, one as each
    subject's workflow completes, and one per failed step as it fails."""

    def __init__(self) -> None:
        self.left: dict[str, int] = {}
        self.total = self.done = 0
        self.started = time.monotonic()

    def expect(self, subject_wf: str, n_nodes: int) -> None:
        """Register a subject's workflow (``sub_<label>``) and its number of nodes."""
        self.left[subject_wf] = n_nodes
        self.total += n_nodes

    def __call__(self, node, status: str) -> None:
        subject_wf = next((p for p in node.fullname.split(".") if p in self.left), None)
        if subject_wf is None or status == "start":
            return
        label = subject_wf.removeprefix("sub_")
        if status == "exception":
            log.warning("sub-%s: step %s failed", label, node.name)
            return
        self.done += 1
        if 10 * self.done // self.total > 10 * (self.done - 1) // self.total:
            elapsed = self.elapsed()
            left = elapsed / self.done * (self.total - self.done)
            log.info(
                "%d/%d steps done (%.0f %%) after %s, about %s left",
                self.done, self.total, 100 * self.done / self.total, duration(elapsed),
                duration(left),
            )  # fmt: skip
        self.left[subject_wf] -= 1
        if self.left[subject_wf] == 0:
            log.info("sub-%s: done after %.0f s", label, self.elapsed())

    def elapsed(self) -> float:
        """Seconds since the progress began."""
        return time.monotonic() - self.started


def _raise_if_failed(summary: Summary) -> None:
    if not summary.failed:
        return
    first = summary.failed[0]
    more = (
        f" (and {len(summary.failed) - 1} more failure(s), see the log)"
        if len(summary.failed) > 1
        else ""
    )
    full = next((error for error in summary.failed if isinstance(error, OutputError)), None)
    if full is not None:
        raise OutputError(f"{len(summary.failed)} scan(s) failed; first output error: {full}")
    if summary.processed or summary.skipped:
        raise errors.BidsFusionError(
            f"{len(summary.failed)} scan(s) failed, the others finished; first: {first}"
        )
    raise type(first)(f"nothing could be processed: {first}{more}")
