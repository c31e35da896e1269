"""digitlab: the helper package of the digitlab course on CNNs for handwritten digits."""

from digitlab.checkpoints import course_model, load, load_or_train, save
from digitlab.config import FAST_RECIPE, RECIPE, RunConfig
from digitlab.data import load_mnist, mnist_splits, normalize
from digitlab.models import DigitRecognitionCNN, count_parameters, summary
from digitlab.settings import FAST
from digitlab.train import evaluate, fit, get_device, predict, predict_proba, set_seed

__version__ = "0.1.0"

__all__ = ["FAST", "FAST_RECIPE", "RECIPE", "DigitRecognitionCNN", "RunConfig", "count_parameters", "course_model",
           "evaluate", "fit", "get_device", "load", "load_mnist", "load_or_train", "mnist_splits", "normalize",
           "predict", "predict_proba", "save", "set_seed", "summary"]
