"""cospeech.diffusion"""
