"""cospeech.pipeline"""
