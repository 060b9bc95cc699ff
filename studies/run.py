#!/usr/bin/env python
"""Run a MedUnA hyperparameter study: `python studies/run.py --study chestxray [overrides]`.

Overrides are Hydra's (`data.roots.shenzhen=/data/ChinaSet_AllFiles model.checkpoint=/models/medclip
resources=gpu storage.path=s3://bucket/medguna`). With no data roots and no checkpoint it runs a
demonstration on synthetic stand-ins and the test-size MedCLIP, which finishes in minutes on a laptop.
Running the same command again resumes an interrupted study; --fresh starts over.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="chestxray", help="chestxray | fundus | skin | all (studies/conf/study/)")
    parser.add_argument("--fresh", action="store_true", help="delete this study's earlier results and start over")
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
        from medguna.study.runner import StudyInterrupted, run_study

        plan = run_study(cfg, fresh=args.fresh, verbose=args.verbose)
    except MedgunaError as err:
        print(f"studies/run.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once (listed first: StudyInterrupted may be unbound)
        return 130
    except StudyInterrupted:
        return 130
    if not args.no_report:
        from medguna.analysis.report import short_leaderboard, write_report

        print(short_leaderboard(plan.study_dir))
        out = write_report([plan.study_dir], None, progress=sys.stdout.isatty())
        page = out.parent / "report.html"
        print(f"Report: {page} (tables and figures also under {out.parent})\n"
              f"TensorBoard: tensorboard --logdir {plan.study_dir}")
        if args.open:
            import webbrowser

            webbrowser.open(page.resolve().as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
