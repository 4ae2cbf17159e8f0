"""The rules of a migration over time: phases, enrollment, planning, enforcement, status."""
