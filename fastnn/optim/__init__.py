"""fastnn.optim: optimisers with torch's update rules and state_dict layout, and learning-rate
schedulers (:mod:`fastnn.optim.lr_scheduler`)."""
from . import lr_scheduler
from .optimizer import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
