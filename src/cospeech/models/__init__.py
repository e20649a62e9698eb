"""cospeech.models"""
