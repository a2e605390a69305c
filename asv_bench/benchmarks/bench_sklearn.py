"""``fit`` of fastnn.sklearn.MLPClassifier against scikit-learn's, on a small problem.

The full-size comparison is ``fastnn bench --sklearn`` (minutes); this one stays quick:
2,000 x 20 make_classification (3 classes), hidden (64, 64), 5 epochs of batch 200, after a
warm-up fit that loads the kernels (fastnn.bench.warmup_fit).
"""

import warnings

from fastnn.bench import sklearn_estimator, sklearn_problem, warmup_fit

SPEC = {"data": "make_classification", "n_samples": 2_000, "n_features": 20,
        "n_informative": 10, "n_classes": 3, "hidden": [64, 64], "max_iter": 5}


class SklearnFit:
    params = ["fastnn-float64", "fastnn-float32", "sklearn-float64"]
    param_names = ["variant"]
    timeout = 300

    def setup(self, variant):
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=5 is meant to stop it
        self.X_train, self.X_test, self.y_train, self.y_test = sklearn_problem(SPEC)
        warmup_fit(variant, SPEC["hidden"], self.X_train, self.y_train)

    def time_fit(self, variant):
        sklearn_estimator(variant, SPEC["hidden"], SPEC["max_iter"]).fit(self.X_train,
                                                                        self.y_train)

    def track_test_accuracy(self, variant):
        est = sklearn_estimator(variant, SPEC["hidden"], SPEC["max_iter"])
        return est.fit(self.X_train, self.y_train).score(self.X_test, self.y_test)

    track_test_accuracy.unit = "accuracy"
