"""Flow-matching schedule with shift, classifier-free guidance, and samplers."""

from cospeech.diffusion.guidance import FlowModel, Guidance
from cospeech.diffusion.samplers import SamplerStep, StepCallback, sample_euler, sample_few_step
from cospeech.diffusion.schedule import (
    NUM_TRAIN_TIMESTEPS,
    add_noise,
    flow_target,
    flow_to_noise,
    flow_to_x0,
    sample_dmd_sigmas,
    sample_training_sigmas,
    sampling_sigmas,
    shift_sigma,
    sigma_to_timestep,
    step_list_sigmas,
    timestep_to_sigma,
    unshift_sigma,
    x0_to_flow,
)

__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "FlowModel",
    "Guidance",
    "SamplerStep",
    "StepCallback",
    "add_noise",
    "flow_target",
    "flow_to_noise",
    "flow_to_x0",
    "sample_dmd_sigmas",
    "sample_euler",
    "sample_few_step",
    "sample_training_sigmas",
    "sampling_sigmas",
    "shift_sigma",
    "sigma_to_timestep",
    "step_list_sigmas",
    "timestep_to_sigma",
    "unshift_sigma",
    "x0_to_flow",
]
