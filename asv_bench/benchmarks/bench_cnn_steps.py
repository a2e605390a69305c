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


class CIFARConvLayer:
    """Forward + backward (fused ReLU, float32, batch 128) of each 3x3 convolution of the
    small CIFAR net, by the shifted products (what stride-1 layers run) and by the chunked
    im2col path (what they ran before): the layer-level record behind ``uses_shifted``."""

    params = (["3-32@32", "32-32@32", "32-64@16", "64-64@16"], ["shifted", "im2col-chunked"])
    param_names = ["layer", "path"]
    timeout = 600

    def setup(self, layer, path):
        import numpy as np

        from fastnn.kernels import conv
        from fastnn.kernels.activations import CODES

        channels, size = layer.split("@")
        c, o = map(int, channels.split("-"))
        n, h = 128, int(size)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((o, c, 3, 3)) * 0.1).astype(np.float32)
        b = np.zeros(o, np.float32)
        y, d = np.empty((n, o, h, h), np.float32), np.empty((n, o, h, h), np.float32)
        partial, dW, db = np.empty((n, o)), np.empty_like(w), np.empty_like(b)
        dx = np.empty_like(x) if c > 3 else None  # the first layer has no input gradient
        pad, relu = (1, 1, 1, 1), CODES["relu"]
        if path == "shifted":
            m = conv.shifted_plan(n, c, o, h, h, pad, 4)
            s = {k: np.empty(v, np.float32)
                 for k, v in conv.shifted_scratch_shapes(n, w.shape, m).items()}

            def run():
                conv.conv2d_forward_shifted(x, w, b, pad, (1, 1), relu, 0.0, m, s["w_taps"],
                                            y, d)
                conv.conv2d_backward_shifted(y, d, x, w, pad, (1, 1), m, s["w_taps"],
                                             s["dW_tasks"], partial, dx, dW, db)
        else:
            m = max(1, conv.chunk_plan(n, c, h, h, 3, 3, 4))
            s = {k: np.empty(v, np.float32)
                 for k, v in conv.chunk_scratch_shapes(n, w.shape, h, h, 1, m).items()}

            def run():
                conv.conv2d_forward_chunked(x, w, b, (1, 1), pad, (1, 1), 1, relu, 0.0, m,
                                            s["cols"], s["z"], y, d)
                conv.conv2d_backward_chunked(y, d, x, w, (1, 1), pad, (1, 1), 1, m, s["cols"],
                                             s["z"], s["dcols"], s["dW_tasks"], partial, dx,
                                             dW, db)
        self.run = run
        run()

    def time_forward_backward(self, layer, path):
        self.run()
