//! Per-dispatch GPU time from timestamp queries, where the adapter has them.

pub struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    pub read: wgpu::Buffer,
    count: u32,
}

impl Timestamps {
    /// Two queries (begin, end) for each of `dispatches` passes.
    pub fn new(device: &wgpu::Device, dispatches: usize) -> Self {
        let count = 2 * dispatches.max(1) as u32;
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("layer times"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let size = count as u64 * 8;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        };
        let resolve = buffer("timestamps", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let read = buffer("timestamps read", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        Timestamps { set, resolve, read, count }
    }

    pub fn writes(&self, dispatch: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * dispatch as u32),
            end_of_pass_write_index: Some(2 * dispatch as u32 + 1),
        }
    }

    /// Only the beginning of `dispatch`'s span (`first`) or only its end, for
    /// a span over several passes (the tuner's, native only).
    #[cfg(feature = "native")]
    pub fn write(&self, dispatch: usize, first: bool, last: bool) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        (first || last).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: first.then_some(2 * dispatch as u32),
            end_of_pass_write_index: last.then_some(2 * dispatch as u32 + 1),
        })
    }

    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.set, 0..self.count, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, self.count as u64 * 8);
    }

    /// Milliseconds of each dispatch from the read-back ticks.
    pub fn millis(raw: &[u8], period_ns: f32) -> Vec<f64> {
        let ticks: &[u64] = bytemuck::cast_slice(raw);
        ticks.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns as f64 / 1e6).collect()
    }
}
