"""The shared training loop (roomtone.models.training.loop) on a tiny job: a linear model fitted to
y = 2x. One run writes the best weights and the checkpoint, evaluates on its cadence and at the end,
resumes where the checkpoint left off, and leaves no data thread behind."""

import threading

import numpy as np

from roomtone.models import weights
from roomtone.models.training import loop


class Line:
    """y = 2x by a 1x1 linear layer: the step, the data and the evaluation a job gives the loop."""

    def __init__(self, seed=0):
        from flax import nnx

        self.rng = np.random.default_rng(seed)
        self.x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]

        @nnx.jit
        def step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(lambda m: ((m(x) - y) ** 2).mean())(model)
            optimizer.update(model, grads)
            return loss

        self.compiled = step

    def batch(self):
        x = self.rng.uniform(-1, 1, (8, 1)).astype(np.float32)
        return x, 2 * x

    def step(self, model, optimizer, batch):
        return self.compiled(model, optimizer, *batch)

    def evaluate(self, model):
        error = float(np.mean((np.asarray(model(self.x)) - 2 * self.x) ** 2))
        return loop.Evaluation(error, [error])

    def arrays(self, model):
        return weights.model_arrays(model)

    def checkpoint_config(self, model, step, evaluation, history):
        return {"architecture": {}, "sample_rate": 1}

    def weights_config(self, model, step, evaluation, history):
        return {"architecture": {}, "sample_rate": 1, "error": evaluation.score, "step": step}


def new_model():
    from flax import nnx

    return nnx.Linear(1, 1, rngs=nnx.Rngs(0))


def test_a_run_selects_checkpoints_resumes_and_shuts_its_data_thread(tmp_path, capsys):
    out = str(tmp_path / "line.npz")
    model, step, history, meta = loop.start(new_model, out=out)
    assert (step, history, meta) == (0, [], None)
    settings = loop.Loop(out=out, steps=6, eval_every=4, log_every=2, maximise=False)
    first = loop.train(settings, Line(), model, loop.adamw(model, lr=0.1, warmup=1, decay_steps=6, end_lr=0.01,
                                                           weight_decay=0.0))
    assert first.step == 6 and [h[0] for h in first.history] == [4, 6]  # the cadence, and the end
    assert first.best == min(h[2] for h in first.history)
    assert weights.load_config(out)["error"] == first.best
    ckpt = loop.checkpoint_path(out)
    assert ckpt == str(tmp_path / "checkpoints" / "line.ckpt.npz")
    assert weights.load_config(ckpt)["step"] == 6
    assert not [t for t in threading.enumerate() if t.name.startswith("batches")]
    assert "eval step 4:" in capsys.readouterr().out

    model, step, history, meta = loop.start(new_model, out=out, resume=True)
    assert step == 6 and history == first.history and meta["best"] == first.best
    resumed, trained = weights.model_arrays(model), weights.model_arrays(first.model)
    assert all(np.array_equal(resumed[k], trained[k]) for k in trained)
    settings = loop.Loop(out=out, steps=10, eval_every=4, log_every=2, maximise=False)
    again = loop.train(settings, Line(1), model, loop.adamw(model, lr=0.1, warmup=1, decay_steps=4, end_lr=0.01,
                                                            weight_decay=0.0),
                       start_step=step, best=meta["best"], history=history)
    assert again.step == 10 and [h[0] for h in again.history] == [4, 6, 8, 10]
    assert again.best <= first.best


def test_a_run_from_weights_records_them_and_evaluates_them_first(tmp_path):
    out = str(tmp_path / "line.npz")
    init = str(tmp_path / "init.npz")
    weights.save_weights(init, weights.model_arrays(new_model()), {"architecture": {}, "sample_rate": 1})
    model, step, history, _ = loop.start(new_model, out=out, init=init)
    assert step == 0 and history == [["init", init]]
    settings = loop.Loop(out=out, steps=1, eval_every=4, maximise=False, evaluate_first=True)
    result = loop.train(settings, Line(), model, loop.adamw(model, lr=0.1, warmup=1, decay_steps=2, end_lr=0.01,
                                                            weight_decay=0.0), history=history)
    assert [h[0] for h in result.history] == ["init", 0, 1]


def test_the_wall_clock_budget_stops_a_run(tmp_path):
    out = str(tmp_path / "line.npz")
    model = new_model()
    settings = loop.Loop(out=out, steps=1000, minutes=0.0, maximise=False)
    result = loop.train(settings, Line(), model, loop.adamw(model, lr=0.1, warmup=1, decay_steps=2, end_lr=0.01,
                                                            weight_decay=0.0))
    assert result.step == 0 and [h[0] for h in result.history] == [0]
