"""The computations whose gradients are frozen in ``tests/golden/graph_ops.npz``.

Each case is a name, a function of Tensors returning a scalar, and the input shapes.
Inputs are drawn from ``numpy.random.default_rng(seed)`` and stored with the gradients,
so the file alone says what was computed.
"""

import fastnn as fnn

CASES = {
    "seed_add_mul": (lambda x, y, z: (x + y) * z, [(), (), ()]),
    "broadcast_mul_add": (lambda a, b, c: (a * b + c).sum(), [(3, 4), (4,), (3, 1)]),
    "div_pow": (lambda a, b: (a / (b * b + 1.0) + a**3).sum(), [(2, 5), (5,)]),
    "exp_log": (lambda a: fnn.log(fnn.exp(a) + 1.0).mean(), [(6,)]),
    "sigmoid_neuron": (lambda w, x: fnn.sigmoid((w * x).sum()), [(3,), (3,)]),
    "two_layer_net": (lambda W1, W2, x: (W2 @ fnn.maximum(W1 @ x, 0.0)).sum(),
                      [(5, 4), (3, 5), (4,)]),
    "tanh_relu_mlp": (lambda X, W1, W2: fnn.tanh(fnn.relu(X @ W1) @ W2).mean(),
                      [(4, 3), (3, 6), (6, 2)]),
    "activations": (lambda a: (fnn.activation(a, "gelu") + fnn.activation(a, "silu")
                               + fnn.activation(a, "elu", 1.0)).sum(), [(2, 3)]),
}
