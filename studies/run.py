#!/usr/bin/env python
"""Run a MedUnA hyperparameter study: `python studies/run.py --study chestxray [overrides]`.

Overrides are Hydra's (`data.roots.shenzhen=/data/ChinaSet_AllFiles model.checkpoint=/models/medclip
resources=gpu storage.path=s3://bucket/medguna`). With no data roots and no checkpoint it runs a
demonstration on synthetic stand-ins under an acquisition shift with the shipped demonstration
encoder (a test-size MedCLIP-ViT pretrained on unshifted drawings), which finishes in minutes on a laptop.
Running the same command again resumes an interrupted study, or extends a study whose
study.num_samples grew; a study run again with other settings is refused with the list of changes
(--restart DATASET starts one dataset over); --fresh starts the whole study over.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="chestxray", help="chestxray | fundus | skin | all (studies/conf/study/)")
    parser.add_argument("--fresh", action="store_true", help="delete this study's earlier results and start over")
    parser.add_argument("--restart", action="append", default=[], metavar="DATASET",
                        help="delete this dataset's earlier results and start it over, keeping the other "
                             "datasets' (repeatable); the way to change a dataset's settings")
    parser.add_argument("--no-report", action="store_true", help="skip the leaderboards and figures at the end")
    parser.add_argument("--confirm-top", type=int, metavar="K", default=None,
                        help="confirmation stage: rerun the K best configurations per dataset with fresh "
                             "seeds (0: none); also on a finished study")
    parser.add_argument("--seeds", type=int, metavar="N", default=None,
                        help="fresh seeds per confirmed configuration")
    parser.add_argument("--open", action="store_true", help="open the study's report.html at the end")
    parser.add_argument("--verbose", action="store_true",
                        help="Ray's own trial tables and log lines instead of medguna's progress display")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    # Overrides may also follow the options (`--fresh a=b`): argparse leaves those unparsed.
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = [*args.overrides, *extra]
    confirm = []  # the flags set the real and the demonstration budget alike
    if args.confirm_top is not None:
        confirm += [f"study.confirm_top={args.confirm_top}", f"study.demo_confirm_top={args.confirm_top}"]
    if args.seeds is not None:
        confirm += [f"study.confirm_seeds={args.seeds}", f"study.demo_confirm_seeds={args.seeds}"]

    from medguna.compose import compose_study
    from medguna.errors import MedgunaError

    try:
        cfg = compose_study([f"study={args.study}", *confirm, *args.overrides])
        from medguna.study.guards import check_fixed_not_searched

        check_fixed_not_searched(args.overrides, cfg.search.space)
        from medguna.study.errors import StudyFailed, StudyInterrupted
        from medguna.study.runner import run_study

        plan = run_study(cfg, fresh=args.fresh, restart=args.restart, verbose=args.verbose)
    except MedgunaError as err:
        print(f"studies/run.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once (listed first: StudyInterrupted may be unbound)
        return 130
    except StudyInterrupted as interrupted:
        return interrupted.exit_code
    except StudyFailed as failed:
        print(f"studies/run.py: {failed}; the study is not complete (see the errors above)", file=sys.stderr)
        return 1
    if not args.no_report:
        return _report(plan, open_page=args.open)
    return 0


def _report(plan, open_page: bool = False) -> int:
    """The end-of-study report; a failure here loses nothing (the results are written) and says how
    to rerun just the report."""
    from medguna.errors import MedgunaError
    from medguna.study.end_report import report_study
    from medguna.study.progress import fit_block

    try:
        report = report_study(plan)
    except (MedgunaError, OSError) as err:
        print(f"studies/run.py: the study finished, but its report failed: {err}\n"
              f"The results are kept in {plan.study_dir}; rerun the same command to retry the report "
              "(nothing is rerun).", file=sys.stderr)
        return 1
    print(fit_block(report.leaderboard))
    copied = f" (copied to {report.copied_to})" if report.copied_to else ""
    page = report.index.parent / "report.html"
    print(f"Report: {page}{copied} (tables and figures also under {report.index.parent})\n"
          f"TensorBoard: tensorboard --logdir {shlex.quote(plan.study_dir)}")
    if open_page:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
