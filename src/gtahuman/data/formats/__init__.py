"""Readers and writers of the real dataset formats: raw GTA-Human release, HumanData npz, SPIN npz."""
