"""cospeech.train"""
