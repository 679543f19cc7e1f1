"""Trial entrypoint: ``python -m training.trial_entry``, started by a launcher through Dagster Pipes.

The same command runs as a local subprocess and inside a Kubernetes pod. What to train arrives as Pipes
extras (a `TrialRequest`); logs stream back to the Dagster run and the outcome returns as a custom message
``{"result": {...}}``.
"""

from __future__ import annotations

import os

from dagster_pipes import open_dagster_pipes


def main() -> None:
    with open_dagster_pipes() as pipes:
        from training.hpo_trial import TrialRequest, run_study_trial

        request = TrialRequest.from_extras(dict(pipes.extras))
        os.environ.update(request.env)
        if request.threads:
            import torch

            torch.set_num_threads(request.threads)
        pipes.log.info(
            f"trial {request.trial_number} of {request.study_name} (pid {os.getpid()}): {request.params}"
        )
        result = run_study_trial(request, log=pipes.log.info)
        pipes.report_custom_message({"result": result})


if __name__ == "__main__":
    main()
