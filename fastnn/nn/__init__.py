"""fastnn.nn: modules with parameters and explicit backward passes, torch's names and state_dict keys."""
from .layers import Dropout, Flatten, Linear, ReLU, Sequential, Sigmoid, Softmax, Tanh
from .module import Module, Parameter, is_grad_enabled, no_grad
from . import utils
from .recurrent import GRU, LSTM, AdditiveAttention, Embedding, GRUCell, LSTMCell
from .attention import MultiheadAttention, ScaledDotProductAttention
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss,
                   SmoothL1Loss)

__all__ = [
    "Module", "Parameter", "no_grad", "is_grad_enabled",
    "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Flatten", "Dropout", "Sequential",
    "Embedding", "LSTM", "GRU", "LSTMCell", "GRUCell", "AdditiveAttention",
    "ScaledDotProductAttention", "MultiheadAttention",
    "Conv2d", "MaxPool2d", "AvgPool2d",
    "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "SmoothL1Loss",
    "HuberLoss", "KLDivLoss",
]
