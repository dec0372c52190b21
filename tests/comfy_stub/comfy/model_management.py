"""Stand-in for comfy.model_management: device helpers and the interrupt flag."""

import torch


class InterruptProcessingException(Exception):
    pass


interrupt_requested = False


def interrupt_current_processing(value=True):
    global interrupt_requested
    interrupt_requested = value


def throw_exception_if_processing_interrupted():
    global interrupt_requested
    if interrupt_requested:
        interrupt_requested = False
        raise InterruptProcessingException()


def get_torch_device():
    return torch.device("cpu")


def intermediate_device():
    return torch.device("cpu")


def soft_empty_cache(force=False):
    return None


def free_memory(memory_required, device, keep_loaded=()):
    return None


def unload_all_models():
    return None
