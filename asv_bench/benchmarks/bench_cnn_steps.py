"""Whole training steps of the CNNs of fastnn.bench.CNN_MODELS (LeNet-5 on 1x28x28, batch 64;
the small CIFAR net with BatchNorm2d on 3x32x32, batch 128): forward, cross-entropy, backward,
Adam, float32.

``CNNTrainingStep`` is the graph path (zero_grad, loss.backward(), step);
``CompiledCNNTrainingStep`` is the ``fastnn`` entry of ``fastnn bench``: ``fnn.compile_step``
when it compiles the model, the graph path when it raises ``NotCompilable`` (as it does for
convolutions today). Side by side with PyTorch and JAX: ``fastnn bench --models lenet,cifar``.
"""

import fastnn as fnn
from fastnn.bench import CNN_MODELS, _fastnn_cnn_compiled_step, _fastnn_cnn_step


class CNNTrainingStep:
    """The graph step (``loss.backward(); opt.step()``) of each CNN of the bench."""

    params = list(CNN_MODELS)
    param_names = ["model"]
    timeout = 900
    make_step = staticmethod(_fastnn_cnn_step)

    def setup(self, name):
        fnn.warmup(dtypes=("float32",), verbose=False)
        self.step = self.make_step(name)
        for _ in range(2):
            self.step()

    def time_step(self, name):
        self.step()

    def peakmem_step(self, name):
        self.step()


class CompiledCNNTrainingStep(CNNTrainingStep):
    """The ``fastnn`` entry of the bench: the compiled step, or the graph path it falls back to."""

    make_step = staticmethod(_fastnn_cnn_compiled_step)
