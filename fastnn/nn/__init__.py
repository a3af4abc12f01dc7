"""fastnn.nn: modules with parameters and explicit backward passes, torch's names and state_dict keys."""
from .layers import Dropout, Dropout2d, Flatten, Linear, Permute, ReLU, Sequential, Sigmoid, Softmax, Tanh
from .module import Module, Parameter, is_grad_enabled, no_grad
from . import utils
from .recurrent import GRU, LSTM, AdditiveAttention, Embedding, GRUCell, LSTMCell
from .attention import MultiheadAttention, ScaledDotProductAttention
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss,
                   SmoothL1Loss)
from .conv import (AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, Conv1d, Conv2d, ConvTranspose2d, MaxPool1d, MaxPool2d,
                   Upsample)
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .activation import ELU, GELU, Hardswish, Identity, LeakyReLU, LogSoftmax, PReLU, SiLU, Softplus

__all__ = [
    "Module", "Parameter", "no_grad", "is_grad_enabled",
    "Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Flatten", "Dropout", "Sequential",
    "Embedding", "LSTM", "GRU", "LSTMCell", "GRUCell", "AdditiveAttention",
    "ScaledDotProductAttention", "MultiheadAttention",
    "Conv2d", "MaxPool2d", "AvgPool2d",
    "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "SmoothL1Loss",
    "HuberLoss", "KLDivLoss",
    "Conv1d", "ConvTranspose2d", "AdaptiveAvgPool2d", "MaxPool1d", "AvgPool1d", "Dropout2d", "Upsample", "Permute",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm",
    "GELU", "SiLU", "LeakyReLU", "ELU", "PReLU", "Softplus", "Hardswish", "LogSoftmax", "Identity",
]
