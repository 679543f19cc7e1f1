"""Serving: score stored models on chosen (entity, anchor) rows, the pipeline's last mile (no Dagster here).

`served_model` loads what `best_model` stored; `scoring` streams rows through it in bounded chunks exactly as
the training path evaluates them; `outputs` shapes the rows a user reads; `predict` publishes them atomically;
`drift` compares served scores with validation ones.
"""
