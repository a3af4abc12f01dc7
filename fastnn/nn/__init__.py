"""fastnn.nn: modules with parameters and explicit backward passes, torch's names and state_dict keys."""
from .layers import Dropout, Flatten, Linear, ReLU, Sequential, Sigmoid, Softmax, Tanh
from .module import Module, Parameter, is_grad_enabled, no_grad
from .recurrent import LSTM, AdditiveAttention, Embedding
from .attention import MultiheadAttention, ScaledDotProductAttention
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .activation import ELU, GELU, Hardswish, Identity, LeakyReLU, LogSoftmax, PReLU, SiLU, Softplus

__all__ = [
    "Module", "Parameter", "no_grad", "is_grad_enabled",
    "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Flatten", "Dropout", "Sequential",
    "Embedding", "LSTM", "AdditiveAttention",
    "ScaledDotProductAttention", "MultiheadAttention",
    "Conv2d", "MaxPool2d", "AvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm",
    "GELU", "SiLU", "LeakyReLU", "ELU", "PReLU", "Softplus", "Hardswish", "LogSoftmax", "Identity",
]
